"""The SQS lane dispatcher, its Lambda handler and result sinks."""
