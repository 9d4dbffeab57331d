"""Generated gRPC stubs for the fedpeer.v1 wire contract (see proto/fedpeer/v1/)."""
