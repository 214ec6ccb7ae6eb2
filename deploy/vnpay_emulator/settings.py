"""Settings of the VNPay sandbox emulator, read from the environment (names are the fields in upper case)."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class EmulatorSettings(BaseSettings):
    """One terminal (TMN code + hash secret + IPN URL), as VNPay configures it, plus the bank side."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore")

    vnpay_tmn_code: str = Field(default="QTDEMO01", min_length=1, max_length=32)
    vnpay_hash_secret: SecretStr = SecretStr("QTDEMOSECRETQTDEMOSECRETQTDEMO00")
    # At VNPay the IPN URL is registered per terminal, never sent in the payment URL.
    vnpay_emulator_ipn_url: str = "http://127.0.0.1:8000/v1/vnpay/ipn"
    vnpay_emulator_ipn_retries: int = Field(default=10, ge=0, le=100)
    vnpay_emulator_ipn_retry_seconds: float = Field(default=2.0, ge=0)
    vnpay_emulator_http_timeout_seconds: float = Field(default=5.0, gt=0)

    bank_notify_url: str = "http://127.0.0.1:8000/v1/vietqr/notifications"
    bank_notify_secret: SecretStr = SecretStr("QTDEMOBANKSECRET")
    bank_notify_retries: int = Field(default=5, ge=0, le=20)
    bank_notify_retry_seconds: float = Field(default=0.5, ge=0)
