"""The VSS (Vehicle Service System) simulator: maintenance history and compliance, read-only for CaaS."""
