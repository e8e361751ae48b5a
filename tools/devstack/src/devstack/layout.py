"""Where things live: the repository, its git-ignored run folder and the project-local Dapr runtime."""

import os
from dataclasses import dataclass
from pathlib import Path


def user_cache() -> Path:
    """Where the project keeps what it downloads and builds outside the repository (as tools/bootstrap.sh does):
    deleting it removes all of it."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sidecart"


@dataclass(frozen=True)
class Layout:
    repo: Path

    @classmethod
    def discover(cls) -> "Layout":
        return cls(repo=Path(__file__).resolve().parents[4])

    @property
    def run_dir(self) -> Path:
        return self.repo / ".run"

    @property
    def runtime_path(self) -> Path:
        """DAPR_RUNTIME_PATH for the dapr CLI: it looks for daprd in <this>/.dapr/bin."""
        return Path(os.environ.get("DAPR_RUNTIME_PATH", self.repo / ".runtime"))

    @property
    def runtime_bin(self) -> Path:
        return self.runtime_path / ".dapr" / "bin"

    @property
    def run_file(self) -> Path:
        return self.repo / "dapr.yaml"

    def components(self, profile: str) -> Path:
        return self.repo / "components" / profile

    @property
    def daprd_logs(self) -> Path:
        """The dapr CLI writes each app's daprd log into <appDirPath>/.dapr/logs; every app's appDirPath is '.'."""
        return self.repo / ".dapr" / "logs"
