"""The team server's HTTP side, one router per kind of caller and task (app.py assembles them):
pairing (machines asking to join, admins approving), ingest (machines' batches), reports (the
rollups, in the local API's paths and shape) and pages (the admin's HTML pages and forms)."""
