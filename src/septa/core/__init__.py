"""The registry of qubes: classes, typed properties, features, tags, labels, events, store.

Nothing here knows of libvirt, sockets or command lines; errors are typed and the API
layer maps them onto the wire exception names.
"""
