"""Local mode: moto's server for AWS, the template's routes on localhost, no Docker, no AWS account."""
