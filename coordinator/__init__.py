"""The Stepline coordinator: a gRPC service that keeps workflow and step state in PostgreSQL."""
