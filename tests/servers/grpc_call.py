"""One unary gRPC call with Python's grpcio, for tests/grpc_refusals.rs.

Usage: grpc_call.py TARGET METHOD [TOKEN]. Prints one JSON object: the
status code's number and name, the details, and the reply's bytes (hex)
when the call succeeded.
"""
import json
import sys

import grpc


def main():
    target, method = sys.argv[1], sys.argv[2]
    token = sys.argv[3] if len(sys.argv) > 3 else ""
    # A proxy from the environment would stand between the client and the gateway.
    channel = grpc.insecure_channel(target, options=[("grpc.enable_http_proxy", 0)])
    call = channel.unary_unary(method)
    metadata = [("authorization", "Bearer " + token)] if token else None
    try:
        reply = call(b"hello", timeout=10, metadata=metadata)
        out = {"code": 0, "name": "OK", "details": "", "reply": reply.hex()}
    except grpc.RpcError as e:
        out = {"code": e.code().value[0], "name": e.code().name, "details": e.details()}
    print(json.dumps(out))


main()
