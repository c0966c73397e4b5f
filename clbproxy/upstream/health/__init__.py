"""Backend health: active checks and passive ejection (``checks``), and the
read model the balancer and observers use (``view``).
"""
