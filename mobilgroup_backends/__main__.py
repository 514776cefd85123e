"""``python -m mobilgroup_backends`` is the ``mobilgroup`` command."""

from .cli import main

raise SystemExit(main())
