"""What a user's fresh clone holds is all the project may read: no file reaches for the team folder beside
the repository (a clone has none), as tests/test_compose.py once did for the Compose schema."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# a relative path up one level into the team folder, or pathlib's parent(s) joined with its name: the ways
# code names the folder beside the repository
TEAM_FOLDER = re.compile(r"\.\./shared\b|parents?(?:\[\d\])?\s*/\s*['\"]shared['\"]")


def test_nothing_reads_the_folder_beside_the_repository() -> None:
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split()
    # a tracked file deleted in the working tree (a move not yet committed) holds nothing to read
    code = [f for f in files if f.endswith((".py", ".sh", ".toml", ".yml", ".yaml", ".cfg")) and (REPO / f).exists()]
    offenders = [f"{name}:{n}" for name in code if name != "tests/test_repository.py"
                 for n, line in enumerate((REPO / name).read_text(errors="replace").splitlines(), 1)
                 if TEAM_FOLDER.search(line)]
    assert not offenders, offenders
