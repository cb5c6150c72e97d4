"""The on-disk cache of costed GPU configurations (:class:`~estimator.learn.gpu_training.Config`), keyed by
the code they depend on: a changed rule or profile never serves stale entries."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

#: Code a costed configuration depends on (paths inside the package; a folder includes everything under it).
_CONFIG_CODE = ("cost/", "graph/", "energy/", "zoo/", "dtypes.py", "learn/gpu_features.py")


def config_code_hash() -> str:
    """Hash of the source and profile files a :class:`Config` depends on (a changed rule never serves stale
    cached configurations)."""
    digest = hashlib.sha256()
    package = Path(__file__).resolve().parent.parent
    files = [*package.rglob("*.py"), *package.rglob("*.toml")]
    for f in sorted(f for f in files if f.relative_to(package).as_posix().startswith(_CONFIG_CODE)):
        digest.update(f.relative_to(package).as_posix().encode())
        digest.update(f.read_bytes())
    return digest.hexdigest()


class ConfigCache:
    """Costed configurations on disk, one file per code version (written atomically, extended as rows join)."""

    def __init__(self, cache_dir: Path | None) -> None:
        directory = cache_dir or Path(
            os.environ.get("ESTIMATOR_CACHE_DIR", Path.home() / ".cache" / "estimator")
        )
        self.path = directory / f"gpu-configs-{config_code_hash()[:24]}.joblib"

    def load(self) -> dict[tuple, object]:
        import joblib

        if self.path.exists():
            try:
                return dict(joblib.load(self.path))
            except Exception:  # an unreadable cache is recomputed, never trusted
                self.path.unlink(missing_ok=True)
        return {}

    def save(self, configs: dict[tuple, object]) -> None:
        import tempfile

        import joblib

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, suffix=".tmp")
            os.close(fd)
            joblib.dump(configs, tmp)
            os.replace(tmp, self.path)
        except OSError:
            pass  # caching is an optimisation


__all__ = ["ConfigCache", "config_code_hash"]
