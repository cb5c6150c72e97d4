"""``python -m estimator.data.importers SOURCE RAW_PATH OUT_PATH``."""

from estimator.data.importers import main

raise SystemExit(main())
