"""The Kubernetes layer: GPU drivers, the model fetch (PersistentVolume, claim, Job), the inference
workload, and the conventions they share. Every object is created on an explicit Kubernetes
provider (`conventions.kubernetes_provider`)."""
