"""Autograd-free denoisers: layers as forward/backward pairs, an MLP and a U-Net, Adam and EMA."""
