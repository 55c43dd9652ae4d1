"""HTTP at the edge: one request seam (route, then forward or answer; failure to page) under the
HTTP/1.1 (`h1`) and HTTP/2 (`h2`) connections; header rules and error pages."""
