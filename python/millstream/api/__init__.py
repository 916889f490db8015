"""The gRPC services (decision 9): `Router` (router.py), `Admin` (admin.py), standard health
and reflection, assembled with security by server.py. The wire format is proto/millstream/v1;
the generated modules are in millstream._proto."""
