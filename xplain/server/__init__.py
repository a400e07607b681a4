"""The REST API, batch jobs with durable state, and the chat page."""
