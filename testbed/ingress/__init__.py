"""An ingress-nginx equivalent: Ingress objects to one nginx.conf served by Debian's nginx.

* :mod:`.model` (pure): :func:`~.model.resolve` an Ingress against Secrets, :func:`~.model.build`
  the servers/locations/upstreams from resolved Ingresses, Services and EndpointSlices;
* :mod:`.render` (pure): :func:`~.render.render` the ``nginx.conf`` text;
* :mod:`.nginx`: write the tree, ``nginx -t`` (:func:`~.nginx.check`), run/reload/stop nginx;
* :mod:`.controller`: the watch loop (``python -m testbed.ingress``).
"""
