#!/usr/bin/env python3
"""A loopback HTTP endpoint for the tests: records each request (method, path, headers, body) as one JSON line.

With --otlp, bodies are decoded as OTLP ExportMetricsServiceRequest with PyPI's opentelemetry-proto and recorded as
JSON (metric names, kinds, temporality, values, exponential-histogram buckets). --status makes it answer with that
status (e.g. 503, to play an upstream that fails). --script answers the requests in turn, the last answer repeating:
a comma-separated list of STATUS[:retry-after=SECONDS][:body=TEXT] (e.g. 503:retry-after=2,204). Every record has the
body also in base64 (`body_base64`, for binary protocols) and its arrival `time` (time.monotonic()).

Usage: http_capture.py PORT OUTPUT.jsonl [--otlp] [--status N] [--script ANSWERS]
"""
import base64, json, sys, time
from http.server import BaseHTTPRequestHandler, HTTPServer

port, output = int(sys.argv[1]), sys.argv[2]
otlp = "--otlp" in sys.argv
status = int(sys.argv[sys.argv.index("--status") + 1]) if "--status" in sys.argv else 200
script = []
if "--script" in sys.argv:
    for answer in sys.argv[sys.argv.index("--script") + 1].split(","):
        parts = answer.split(":")
        options = dict(part.split("=", 1) for part in parts[1:])
        script.append((int(parts[0]), options.get("retry-after"), options.get("body", "")))
answered = 0


def decode_otlp(body):
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
    from opentelemetry.proto.metrics.v1 import metrics_pb2
    request = metrics_service_pb2.ExportMetricsServiceRequest()
    request.ParseFromString(body)
    out = []
    for rm in request.resource_metrics:
        resource = {kv.key: kv.value.string_value for kv in rm.resource.attributes}
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                entry = {"resource": resource, "scope": sm.scope.name, "name": m.name, "unit": m.unit, "kind": kind}
                data = getattr(m, kind)
                if kind in ("sum", "exponential_histogram"):
                    entry["temporality"] = metrics_pb2.AggregationTemporality.Name(data.aggregation_temporality)
                if kind == "sum":
                    entry["monotonic"] = data.is_monotonic
                points = []
                for p in data.data_points:
                    point = {"attributes": {kv.key: kv.value.string_value for kv in p.attributes},
                             "start": p.start_time_unix_nano, "time": p.time_unix_nano}
                    if kind == "exponential_histogram":
                        point.update(count=p.count, sum=p.sum, scale=p.scale, zero_count=p.zero_count,
                                     offset=p.positive.offset, buckets=list(p.positive.bucket_counts),
                                     negative_offset=p.negative.offset,
                                     negative_buckets=list(p.negative.bucket_counts), min=p.min, max=p.max)
                    else:
                        point["value"] = p.as_double
                    points.append(point)
                entry["points"] = points
                out.append(entry)
    return out


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        global answered
        record = {"method": "POST", "path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                  "time": time.monotonic(), "body_base64": base64.b64encode(body).decode()}
        if otlp:
            record["metrics"] = decode_otlp(body)
        else:
            record["body"] = body.decode("utf-8", "replace")
        code, retry_after, text = script[min(answered, len(script) - 1)] if script else (status, None, "")
        answered += 1
        record["status"] = code
        with open(output, "a") as f:
            f.write(json.dumps(record) + "\n")
        payload = text.encode()
        self.send_response(code)
        if retry_after is not None:
            self.send_header("Retry-After", retry_after)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


HTTPServer(("127.0.0.1", port), Handler).serve_forever()
