"""The PostgreSQL event store: schema and migrations, append and read, snapshots, and (in
``eventstore.messaging``) publishing stored events to RabbitMQ. Imports only ``domain``."""
