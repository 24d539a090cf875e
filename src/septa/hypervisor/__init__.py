"""Running qubes as virtual machines: libvirt domain XML, KVM-or-TCG choice, the engine."""
