"""The nightly report: what the night did, as an HTML page and PNG plots, posted to Slack."""
