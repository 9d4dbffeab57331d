"""The v1 protocol only grows: an agent built on any earlier v1 still speaks to this one.

Each earlier version of ``proto/fedpeer/v1/*.proto`` (from git history) and today's are
compiled to descriptors with the pinned protoc, and compared message by message: every
field an earlier version had keeps its number, type and cardinality (a renamed field
keeps its number too), a removed field's number and name are reserved, enum values keep
their numbers, and every earlier method is still served with the same messages.
Adding messages, fields, enum values and methods is fine.
"""

from __future__ import annotations

import shutil
import subprocess
from importlib import resources
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

from fedpeer import protogen

ROOT = protogen.ROOT
PROTO_DIR = "proto/fedpeer/v1"
# Before signed releases (0fa6c66), and every commit that changed the protos since.
EARLIER = ("0fa6c66",)


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True, timeout=30
    ).stdout


def _history_available() -> bool:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        return False
    try:
        _git("cat-file", "-e", f"{EARLIER[0]}^{{commit}}")
    except subprocess.CalledProcessError:
        return False
    return True


pytestmark = pytest.mark.skipif(
    not _history_available(), reason="needs the git history (a source checkout, not a sdist)"
)


def _earlier_commits() -> list[str]:
    touched = _git("log", "--format=%h", "--", PROTO_DIR).split()
    return sorted(set(touched) | set(EARLIER))


def _compile(proto_root: Path, out: Path) -> descriptor_pb2.FileDescriptorSet:
    from grpc_tools import protoc

    protos = sorted(str(p.relative_to(proto_root)) for p in proto_root.rglob("*.proto"))
    include = resources.files("grpc_tools") / "_proto"
    args = ["protoc", f"-I{proto_root}", f"-I{include}", f"--descriptor_set_out={out}", *protos]
    assert protoc.main(args) == 0, f"protoc failed on {proto_root}"
    return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


def _at_commit(commit: str, tmp: Path) -> descriptor_pb2.FileDescriptorSet:
    root = tmp / commit / "proto"
    for name in _git("ls-tree", "--name-only", commit, PROTO_DIR + "/").split():
        target = root / name.removeprefix("proto/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(_git("show", f"{commit}:{name}"))
    return _compile(root, tmp / f"{commit}.pb")


def _messages(files: descriptor_pb2.FileDescriptorSet) -> dict[str, descriptor_pb2.DescriptorProto]:
    found: dict[str, descriptor_pb2.DescriptorProto] = {}

    def walk(prefix: str, messages: object) -> None:
        for message in messages:  # type: ignore[attr-defined]
            name = f"{prefix}.{message.name}"
            found[name] = message
            walk(name, message.nested_type)

    for f in files.file:
        walk(f.package, f.message_type)
    return found


def _enums(
    files: descriptor_pb2.FileDescriptorSet,
) -> dict[str, descriptor_pb2.EnumDescriptorProto]:
    found = {f"{f.package}.{e.name}": e for f in files.file for e in f.enum_type}
    for name, message in _messages(files).items():
        found.update({f"{name}.{e.name}": e for e in message.enum_type})
    return found


def _methods(files: descriptor_pb2.FileDescriptorSet) -> dict[str, tuple[str, str, bool, bool]]:
    return {
        f"{f.package}.{s.name}/{m.name}": (
            m.input_type,
            m.output_type,
            m.client_streaming,
            m.server_streaming,
        )
        for f in files.file
        for s in f.service
        for m in s.method
    }


def _reserved(message: descriptor_pb2.DescriptorProto, number: int) -> bool:
    return any(r.start <= number < r.end for r in message.reserved_range)


def incompatibilities(
    old: descriptor_pb2.FileDescriptorSet, new: descriptor_pb2.FileDescriptorSet
) -> list[str]:
    """Every way ``new`` would break a peer built on ``old``; empty when it only grew."""
    problems = []
    new_messages = _messages(new)
    for name, was in _messages(old).items():
        now = new_messages.get(name)
        if now is None:
            problems.append(f"message {name} was removed")
            continue
        by_number = {f.number: f for f in now.field}
        by_name = {f.name: f for f in now.field}
        for field in was.field:
            where = f"{name}.{field.name} = {field.number}"
            current = by_number.get(field.number)
            if current is None:
                if not (_reserved(now, field.number) and field.name in now.reserved_name):
                    problems.append(f"{where} was removed without reserving its number and name")
            else:
                if (current.type, current.type_name) != (field.type, field.type_name):
                    problems.append(f"{where} changed type")
                if current.label != field.label:
                    problems.append(f"{where} changed between repeated and singular")
                if current.proto3_optional != field.proto3_optional:
                    problems.append(f"{where} changed presence (proto3 optional)")
            renamed = by_name.get(field.name)
            if renamed is not None and renamed.number != field.number:
                problems.append(f"{where} was renumbered to {renamed.number}")
    new_enums = _enums(new)
    for name, was in _enums(old).items():
        now = new_enums.get(name)
        numbers = set() if now is None else {v.number for v in now.value}
        # An enum's reserved ranges include their end, unlike a message's.
        reserved = [] if now is None else [(r.start, r.end) for r in now.reserved_range]
        for value in was.value:
            if value.number not in numbers and not any(a <= value.number <= b for a, b in reserved):
                problems.append(f"enum {name}.{value.name} = {value.number} was removed")
    new_methods = _methods(new)
    for name, signature in _methods(old).items():
        if name not in new_methods:
            problems.append(f"method {name} was removed")
        elif new_methods[name] != signature:
            problems.append(f"method {name} changed its messages or streaming")
    return problems


@pytest.fixture(scope="module")
def current(tmp_path_factory: pytest.TempPathFactory) -> descriptor_pb2.FileDescriptorSet:
    return _compile(ROOT / "proto", tmp_path_factory.mktemp("now") / "now.pb")


@pytest.mark.parametrize("commit", _earlier_commits() if _history_available() else [])
def test_every_earlier_v1_is_a_subset_of_this_one(
    commit: str, current: descriptor_pb2.FileDescriptorSet, tmp_path: Path
) -> None:
    earlier = _at_commit(commit, tmp_path)
    assert _messages(earlier), f"no messages at {commit}"
    assert incompatibilities(earlier, current) == []


def test_the_check_catches_renumbering_retyping_and_removal(
    current: descriptor_pb2.FileDescriptorSet,
) -> None:
    def edited(change: object) -> descriptor_pb2.FileDescriptorSet:
        copy = descriptor_pb2.FileDescriptorSet()
        copy.CopyFrom(current)
        submit = _messages(copy)["fedpeer.v1.SubmitRequest"]
        change(submit)  # type: ignore[operator]
        return copy

    def renumber(m: descriptor_pb2.DescriptorProto) -> None:
        m.field[0].number = 99

    def retype(m: descriptor_pb2.DescriptorProto) -> None:
        m.field[0].type = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES

    def remove(m: descriptor_pb2.DescriptorProto) -> None:
        del m.field[0]

    def remove_reserved(m: descriptor_pb2.DescriptorProto) -> None:
        number, name = m.field[0].number, m.field[0].name
        del m.field[0]
        m.reserved_range.add(start=number, end=number + 1)
        m.reserved_name.append(name)

    first = "fedpeer.v1.SubmitRequest.round_id = 1"
    assert incompatibilities(current, edited(renumber)) == [
        f"{first} was removed without reserving its number and name",
        f"{first} was renumbered to 99",
    ]
    assert incompatibilities(current, edited(retype)) == [f"{first} changed type"]
    assert incompatibilities(current, edited(remove)) == [
        f"{first} was removed without reserving its number and name"
    ]
    assert incompatibilities(current, edited(remove_reserved)) == []
    assert incompatibilities(current, current) == []
