"""The access log, the bottom floor: the event model, the one writer, the hash chains, the
anchors and the verifier. It imports no other app of the project (see docs/architecture.md)."""
