"""Apprise plugin loader for ``mobilgroup://`` URLs (mobilgroup-backends).

The ``apprise`` command imports every Python file in its plugin folders (``~/.apprise/plugins``,
``~/.config/apprise/plugins``, ``APPRISE_PLUGIN_PATH``, ``--plugin-path``). Importing this one
imports ``mobilgroup_backends.apprise``, which registers the Mobilgroup SMS plugin with Apprise.
The plugin itself lives in the installed package, so upgrading the package upgrades it; this
file never needs to change. Written by ``mobilgroup apprise install``; delete it to undo.
"""

try:
    import mobilgroup_backends.apprise  # noqa: F401  (registers mobilgroup:// on import)
except ImportError as exc:  # the package is not installed in the Python that runs Apprise
    import logging

    logging.getLogger("apprise").warning(
        "mobilgroup:// URLs are unavailable: mobilgroup-backends cannot be imported (%s). "
        "Install it into the same Python environment as Apprise, or delete %s.", exc, __file__)
