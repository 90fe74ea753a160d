"""RabbitMQ: the events' message format, publishing with confirms, and durable subscriptions.

A subpackage of the event store (DESIGN §2): the store's events go out through it and come in
to subscribers, who record what they handled in the store's database (the inbox). ``amqp`` is
its one boundary to pika.
"""
