"""docker-compose.yaml's multi-host deployment on one machine, without Docker.

``compose`` reads the file through the compose specification's own loader into a typed model;
``netns`` turns each host into a Linux network namespace on a private bridge.
"""
