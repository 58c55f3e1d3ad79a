"""One Logger and Metrics for every handler (service name and namespace come from the environment).

No tracer: with `Tracing: Active` (template.yaml) Lambda itself records a segment for every invocation
(with its initialization, invocation and overhead), Step Functions and API Gateway trace their part, and
the Logger writes the trace id (`xray_trace_id`) into every log line. Powertools' Tracer would add
subsegments per AWS and FullStory call, at the price of the X-Ray SDK's import (about 230 ms, more than
boto3 itself) on every cold start of functions polled thousands of times (README, Performance).
"""

from aws_lambda_powertools import Logger, Metrics

logger = Logger()
metrics = Metrics()
