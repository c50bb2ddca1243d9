"""Attribution: from a client connection to the process behind it, to a project.

`sockets` finds the process holding a connection, `process` reads what the resolver may use,
`chain` runs the layers in their documented order, `rules` is the user's `[[tagging.rules]]`,
and `resolver.Attributor` ties them to the daemon: one lookup per connection, off the request
path, settled per row on the ledger writer thread.
"""
