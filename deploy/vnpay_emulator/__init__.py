"""VNPay v2.1.0 sandbox emulator that also plays the bank for VietQR transfers (local runs and tests)."""
