"""Self-supervised pretraining (Camarena et al. / PCL): pretext transforms, contrastive loss, loop."""
