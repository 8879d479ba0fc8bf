"""``python -m nbflow``: the same as the ``nbflow`` command."""

from nbflow.cli import main

raise SystemExit(main())
