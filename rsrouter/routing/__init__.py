"""Routing: the router plugin config (config), router labels (labels), the smoothed router
(router), the routed classifier (routed), loading a router and its experts (load), publishing a
folder (push)."""
