"""The Septa guest agent: the code that runs INSIDE qubes.

The template builder copies this package into every template image (under
``/usr/lib/septa-agent``), where Debian's Python 3.11 runs it with the standard library
only. Nothing here may import from the rest of ``septa``: the host side imports
:mod:`septa.agent.wire` to speak the same protocol, and nothing else.
"""
