"""The HTTP layer around the routes: who may call what (access), the API key (auth),
admission control, the middleware stack, problem+json errors (errors, problems), the
OpenAPI document's completion and the Prometheus metrics. The inference and media modules
beside this package know nothing of HTTP but the `StyleboxError` statuses they raise."""
