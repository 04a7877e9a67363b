"""supervisord on every host: config rendering, the multi-host XML-RPC client, the event listener."""
