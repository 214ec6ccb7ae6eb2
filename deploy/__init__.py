"""Running the platform: the local-stack launcher, its processes, and the VNPay emulator."""
