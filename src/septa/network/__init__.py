"""Network of qubes, the parts that need no registry: names and addresses of the links
between a qube and its netvm, and the configuration messages their agents get."""
