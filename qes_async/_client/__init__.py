"""The client: operations, protocol, transport, auth, retry, routes, downloads, documents."""
