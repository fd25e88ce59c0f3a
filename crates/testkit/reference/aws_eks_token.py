"""Sign an EKS token with the AWS CLI's own code, at a fixed time, for comparison.

Reads {"cluster", "region", "access_key", "secret_key", "session_token", "epoch"} as JSON on
stdin; prints the token `aws eks get-token` would print at that instant. Runs in the stack's
awscli venv (`cargo xtask stack up` creates it); nothing is sent anywhere.
"""
import datetime
import json
import sys

import botocore.auth
import botocore.session
from awscli.customizations.eks.get_token import STSClientFactory, TokenGenerator

req = json.load(sys.stdin)
fixed = datetime.datetime.fromtimestamp(req["epoch"], datetime.timezone.utc).replace(tzinfo=None)
# botocore's signers read the clock through this function: pin it.
botocore.auth.get_current_datetime = lambda *args, **kwargs: fixed

session = botocore.session.Session()
session.set_credentials(req["access_key"], req["secret_key"], req.get("session_token"))
sts = STSClientFactory(session).get_sts_client(region_name=req["region"])
print(TokenGenerator(sts).get_token(req["cluster"]))
