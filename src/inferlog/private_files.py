"""Files that hold request records (medical inputs): readable by their owner only.

Directories are 0700 and files 0600, also when an earlier version made them with the umask's
modes (0755 / 0644 usually)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO


def private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)
    return path


def open_private_append(path: Path) -> BinaryIO:
    """`path` opened to append bytes, created 0600 (an existing file is made 0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "ab")
