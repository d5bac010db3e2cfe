"""Authentication: the access keys Sageport accepts and AWS Signature Version 4.

``keys`` stores access keys in the data directory and reads extra ones from
the environment, ``sigv4`` verifies signed requests against them, and ``mode``
decides whether a server verifies at all.
"""
