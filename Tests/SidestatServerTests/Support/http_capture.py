#!/usr/bin/env python3
"""A loopback HTTP endpoint for the tests: records each request (method, path, headers, body) as one JSON line.

With --otlp, bodies are decoded as OTLP ExportMetricsServiceRequest with PyPI's opentelemetry-proto and recorded as
JSON (metric names, kinds, temporality, values, exponential-histogram buckets). --status makes it answer with that
status (e.g. 503, to play an upstream that fails).

Usage: http_capture.py PORT OUTPUT.jsonl [--otlp] [--status N]
"""
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

port, output = int(sys.argv[1]), sys.argv[2]
otlp = "--otlp" in sys.argv
status = int(sys.argv[sys.argv.index("--status") + 1]) if "--status" in sys.argv else 200


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
        record = {"method": "POST", "path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}}
        if otlp:
            record["metrics"] = decode_otlp(body)
        else:
            record["body"] = body.decode("utf-8", "replace")
        with open(output, "a") as f:
            f.write(json.dumps(record) + "\n")
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


HTTPServer(("127.0.0.1", port), Handler).serve_forever()
