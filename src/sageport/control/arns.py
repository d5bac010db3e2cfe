"""ARNs in SageMaker's form, with the lower-cased resource name SageMaker puts in them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Arns:
    """Builds ARNs for one account; the region comes from each request."""

    account_id: str

    def of(self, kind: str, region: str, name: str) -> str:
        return f"arn:aws:sagemaker:{region}:{self.account_id}:{kind}/{name.lower()}"

    def model(self, region: str, name: str) -> str:
        return self.of("model", region, name)

    def endpoint_config(self, region: str, name: str) -> str:
        return self.of("endpoint-config", region, name)

    def endpoint(self, region: str, name: str) -> str:
        return self.of("endpoint", region, name)

    def log_group(self, region: str, endpoint_name: str) -> str:
        return (
            f"arn:aws:logs:{region}:{self.account_id}:log-group:"
            f"/aws/sagemaker/Endpoints/{endpoint_name}"
        )
