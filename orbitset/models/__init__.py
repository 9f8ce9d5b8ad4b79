"""Reference models (SIE, VICReg, SimCLR, EquiMod, SEN, AugSelf, PointNet, VN, frame averaging) and evaluations."""
