"""Settings of the run viewer (``fst-agent view``)."""

from __future__ import annotations

import ipaddress

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: Port ``fst-agent view`` listens on unless told otherwise.
DEFAULT_PORT = 8765


class ViewerConfig(BaseModel):
    """Where the viewer listens and how much it shows at once."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field("127.0.0.1", description="Address to bind. The default is loopback only: nothing off this "
                      "machine can reach the viewer, which has no authentication.")
    port: int = Field(DEFAULT_PORT, ge=0, le=65535, description="Port to listen on; 0 picks a free one.")
    page_size: int = Field(50, ge=1, le=500, description="Episodes per page of a step's table (a page may ask "
                           "for up to max_page_size).")
    max_page_size: int = Field(500, ge=1, le=5000, description="Largest page of episodes one request may ask for.")
    refresh_seconds: float = Field(5.0, ge=0, le=3600, description="How often open pages look for new data of a "
                                   "run still being written (0: never).")
    db_connections: int = Field(4, ge=1, le=64, description="Read-only SQLite connections kept per run.")

    @field_validator("host")
    @classmethod
    def _host_is_an_address(cls, value: str) -> str:
        if value != "localhost":
            try:
                ipaddress.ip_address(value)
            except ValueError:
                raise ValueError(f"host {value!r} is not an IP address (or localhost)") from None
        return value

    @property
    def loopback(self) -> bool:
        """True when only this machine can connect."""
        return self.host == "localhost" or ipaddress.ip_address(self.host).is_loopback
