"""The web surface: the process's HTTP server (`/healthz`, `/metrics`, `/hooks/jenkins`), and the read-only
dashboard (DESIGN §10). Like the Slack surface, it reaches the domain only through its public API."""
