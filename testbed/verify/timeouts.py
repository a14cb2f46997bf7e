"""How long a check waits for an answer, and for proof of a drop."""

ANSWER_TIMEOUT = 2.0
DROP_TIMEOUT = 1.0
