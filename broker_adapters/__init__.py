"""Every adapter to a messaging system: the RabbitMQ backbone, the event sources, the poller."""
