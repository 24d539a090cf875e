"""qrexec on the host: calls into qubes and the policy that allows them.

:mod:`septa.qrexec.mux` multiplexes calls (a process in a qube with its stdin, stdout,
stderr and exit status) over one qube's :class:`~septa.hypervisor.agent_link.AgentLink`.
The package itself imports nothing, so that each of its modules stays light.
"""
