"""What a server runs beside ComfyUI when many servers stand behind one balancer: Prometheus metrics, a
readiness answer that is true only after the warm-up, HAProxy's agent check (a weight that falls as the
queue grows), and the drain a shutdown runs first. Reads ComfyUI through its HTTP API only, so it works the
same with the real server and the test stand-in."""
