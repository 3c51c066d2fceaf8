"""Objecting to a record's opening (opt-out provisioning): open to anyone who knows the INS and
the date of birth; the answer does not tell whether the person was listed."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from dmp.domain.ins import OID_NIR, Ins
from dmp.front.deps import provisioning_service
from dmp.jobs.provisioning import Provisioning

router = APIRouter(prefix="/api/provisioning", tags=["provisioning"])


class ObjectionIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    ins: str = Field(min_length=1, max_length=32)
    oid: str = Field(default=OID_NIR, max_length=64)
    birth_date: date


@router.post("/objection", name="provisioning_objection")
def objection(
    body: ObjectionIn,
    request: Request,
    service: Annotated[Provisioning, Depends(provisioning_service)],
) -> dict[str, str]:
    address = request.client.host if request.client else "unknown"
    message = service.object(Ins(body.oid, body.ins.replace(" ", "")), body.birth_date, address)
    return {"message": message}
