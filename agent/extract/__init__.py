"""Reading and validating the practice extract."""
