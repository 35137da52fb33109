# The liveness mule's script (docker/uwsgi.ini, `mule`): a file, not `module:function`,
# because uWSGI 2.0 cannot load a mule's callable under lazy-apps (the mule segfaults:
# unbit/uwsgi#1746). The server is in conduit/liveness.py.
from conduit.liveness import serve

serve()
