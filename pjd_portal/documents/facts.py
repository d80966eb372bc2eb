"""What a document source tells the policy about one document (access/policy.py decides
on it). Plain data, so the sources need not import the policy that sits above them."""

from __future__ import annotations

import datetime
from dataclasses import dataclass


@dataclass(frozen=True)
class DocumentFacts:
    category: str
    service_date: datetime.date
    confidentiality_code: str
    patient_id: int
    source_id: int
    content_type: str = "application/pdf"
